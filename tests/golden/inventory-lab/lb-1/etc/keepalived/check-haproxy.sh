#!/bin/bash
# keepalived gives up the VIP when this fails: haproxy must be running and accept on port 6443.
# Rendered by kubeforge.
pidof haproxy >/dev/null || exit 1
exec 3<>/dev/tcp/127.0.0.1/6443 2>/dev/null || exit 1
