"""Reference training steps written by hand, to measure dl's overhead against."""
