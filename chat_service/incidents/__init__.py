"""Alertmanager alerts (and people's questions) become Investigation resources that the agent runs and
records: ``alertmanager`` parses and caps a notification, ``naming`` derives the resource name (the API
server's create is the de-duplication), ``episode`` says what a notification means for an existing one,
``store`` keeps them (Kubernetes or memory), ``worker`` claims and runs them, ``runner`` is the agent."""
