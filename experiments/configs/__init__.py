"""One get_config() per experiment."""
