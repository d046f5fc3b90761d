"""`fedchain demo`: the whole system on one machine, with poisoned hospitals caught."""
