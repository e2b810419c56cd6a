"""ActionRequests on the chat side: the agent proposes (proposals.py), a person decides through the API
(service.py), the operator executes, and the conversation continues with the outcome (follow.py)."""
