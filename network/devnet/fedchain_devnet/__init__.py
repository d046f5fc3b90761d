"""fedchain_devnet: a one-process Fabric-protocol network (gateway, endorsing peers, orderer, committer).

Clients talk to it exactly as to a Fabric 2.5 peer's Gateway and Deliver services; chaincode
runs as a service and is driven over the chaincode protocol (DESIGN.md section 2.1).
"""
