"""linked: a chain linked into one XDP program, for kernels that refuse freplace.

Rule: never imports ``chain.freplace``. ``combine`` and ``plan`` are pure; ``build`` and
``backend`` do I/O.
"""
