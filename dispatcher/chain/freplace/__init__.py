"""freplace: libxdp's multi-dispatch protocol (our dispatcher program + extensions).

Rule: never imports ``chain.linked``. ``plan`` is pure; ``backend`` and ``program`` do I/O.
"""
