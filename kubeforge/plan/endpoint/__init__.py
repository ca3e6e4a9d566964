"""Plans about the API endpoint that more than one workflow needs (kubeforge.plan.endpoint.drain:
an API server restarted behind kubeforge's haproxy balancers)."""
