"""The whole path on one machine: nginx → gateway → inference replicas (`make run`)."""
