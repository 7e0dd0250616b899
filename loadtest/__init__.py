"""Load testing the stack with Locust (`make load-test`)."""
