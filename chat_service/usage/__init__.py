"""Usage and cost accounting: every model and tool call counted, rolled up per day, with budgets.

pricing (cost of a call, exact decimals) · estimate (tokens of a call whose provider sent no usage) ·
ledger (daily rollups in Redis or memory) · budgets (caller and model daily limits) · recorder (the
callback handler that sees every call, metrics, the ledger writes) · router (``GET /api/usage``).
"""
