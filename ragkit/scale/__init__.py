"""Scale-out on Ray (``ragkit index --ray``, ``ragkit eval --ray``): an optional extra, ``ragkit[ray]``.

Ray Data fans loading, splitting and embedding out over a cluster's workers while this process
stays the one writer into the store. Nothing here imports Ray at import time.
"""
