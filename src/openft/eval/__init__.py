"""Did fine-tuning help? Held-out examples through four arms (`arms.py`), scored (`metrics.py`);
`openft.services.evals` runs them through the chat service and stores the report."""
