"""fedchain: secure federated learning for hospitals on Hyperledger Fabric."""

__version__ = "0.1.0"
