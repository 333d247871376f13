"""absl binaries of dl: they parse flags and call the library."""
