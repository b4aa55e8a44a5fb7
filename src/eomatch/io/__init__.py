"""I/O adapters: files, the TLE archive and cache, HTTP."""
