"""`make bench`: the serving stack against the raw model limit and two baseline servers.

Everything runs on this machine, back to back, in one run: see ``python -m bench --help``.
"""
