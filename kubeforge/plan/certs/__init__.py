"""Certificates on the hosts: what is there (one read-only probe per host), how it compares with the
local store, and the rolling renewal of what expires."""
