# The package version: the library's (include/sarco/sarco.h SARCO_VERSION_*; test_packaging checks they agree).
__version__ = "0.1.0"
