"""`python -m fedchain_cc` runs a chaincode as a service (see fedchain_cc.server_main)."""

import sys

from fedchain_cc.server_main import main

sys.exit(main())
