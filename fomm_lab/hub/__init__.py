"""Downloads: the registry of files fomm_lab fetches and the one downloader that fetches them."""
