"""chain: several XDP programs on one interface.

Rules: ``router`` is the one entry point of a change; it chooses a back-end once per
attempt and runs one retry loop. ``freplace/`` and ``linked/`` implement
``backend.ChainBackend`` and never import each other. Every refusal is a pure function
in ``rules``; ``model``, ``rules``, ``protocol``, ``state``, ``description``, the
back-ends' ``plan`` modules and ``linked/combine`` are pure (no ``kernel`` import).
The swap, its race, the protocol lock and the pending change are ``pending``'s alone.
Imports ``kernel``, ``obj`` and the base; never ``config`` or the face.

Kept light: ``status`` imports ``observe``/``state``/``protocol`` only.
"""
