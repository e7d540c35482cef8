"""Building a revision: the build command and its content-addressed cache."""
