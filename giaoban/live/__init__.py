"""The live meeting: the protocol, the live state, floor control, the hub, the Janus stage, quality."""
