"""The consortium operator's campaign: rounds driven from the ledger's state (`fedchain operator run`).

`fedchain demo` runs the same driver with simulated hospitals. Modules: `plan` (the next action from
the ledger, restart-safe), `ledger` (the operator's writes), `recipe` (a round's reference, policy and
hyperparameters from public data), `driver` (the loop), `genesis`, `report` (live line and report
JSON), `args` (the policy flags shared with `fedchain demo`), `command` (the CLI bodies).

Nothing is imported here, so the CLI can build its parsers (`args`) without loading torch.
"""
