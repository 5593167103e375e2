"""config: config files, the plans made from them, and what we record of applying them.

Rule: ``model``, ``plan`` and ``drift`` are pure; ``apply`` changes interfaces only through
``chain.router``; ``applied`` and ``ownership`` own the state directory's files. Imports
``chain``, ``kernel``, ``obj`` and the base; never the face (cli, api, render).
"""
