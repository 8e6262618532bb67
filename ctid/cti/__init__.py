"""ctid's CTI API: the server (PUB + ROUTER), retention and replay, security, and a client
library. The design is written down in docs/cti.md."""
