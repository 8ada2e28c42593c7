# Runs at every boot before main.py. Nothing to do yet: the application starts in main.py.
