"""Files that run inside gdb, not in the package: program.py is given to
gdb with -ix by `sameprocess gdb` (see _debug.py).  Nothing here is
imported by sameprocess itself."""
