"""fedchain_devnet: a one-process Fabric-protocol network (gateway, endorsing peers, orderer, committer).

Clients talk to it exactly as to a Fabric 2.5 peer's Gateway and Deliver services; chaincode
runs as a service and is driven over the chaincode protocol (DESIGN.md section 2.1).

    python -m fedchain_devnet --config D/devnet.json     # prints "READY host:port"; SIGTERM stops
    python -m fedchain_devnet.bench --tx 1000 --in-flight 30
    python -m fedchain_devnet.startbench --blocks 100 1000 5000

Modules, in request order:
  config      JSON config format, `make_devnet_config(consortium, ...)`, `ChaincodeDef`
  server      gRPC server: TLS / mutual TLS, message size limit, worker pool
  gateway     gateway.Gateway: Endorse, Evaluate, Submit, CommitStatus, ChaincodeEvents
  deliver     protos.Deliver: Deliver, DeliverFiltered;  slots  cap on long-lived streams
  acl         channel Writers (application clients/admins) and Readers
  proposal    SignedProposal checks (structure, channel, chaincode, tx id, timestamp, creator signature)
  policy      MAJORITY / ANY / ALL / list-of-orgs: endorser selection and satisfaction
  peer        one org's peer: simulate, sign the ProposalResponsePayload; the transaction envelope layout
  ccconn      the peer's Chaincode/Connect stream to a chaincode-as-a-service server
  simulator   answers GET_STATE/PUT_STATE/DEL_STATE/ranges/history; builds the TxReadWriteSet
  orderer     batch cutting (batch timeout, max count) feeding the committer thread
  validator   TxValidationCode per transaction (signatures, policy, duplicates, MVCC, phantoms)
  ledger      blocks (hash chain, orderer signature, filter, commit hash), start-up verification and replay
  integrity   start-up proof that state, history and tx-id index equal the blocks' valid write sets
  blockstore  append-only fsync'ed block file;  statedb  state/history/tx-id index in SQLite
  genesis     block 0: the channel config with every org's MSP
  qscc        GetChainInfo, GetBlockByNumber/ByHash/ByTxID, GetTransactionByID
  launch      DevnetProcess: start (wait for READY) / stop (SIGTERM) / kill (SIGKILL)
  bench       throughput / commit latency through the fedchain gateway client
  startbench  start-up verification time (chain, write-set replay, state DB comparison) vs ledger size
"""
