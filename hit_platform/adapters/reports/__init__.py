"""Reports: the HTML dashboard, the plots logged to MLflow, and the audit of a request or model."""
