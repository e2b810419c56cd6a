"""The agent config in force (store.py) and its ConfigMap watched through the Kubernetes API (kubernetes.py)."""
