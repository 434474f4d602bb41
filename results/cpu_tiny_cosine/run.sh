#!/usr/bin/env bash
# The recorded CPU study with a cosine-decayed step (recipes/cpu_tiny_cosine.json), resumable.
exec bash "$(dirname "$0")/../cpu_tiny/run.sh" recipes/cpu_tiny_cosine.json cpu_tiny_cosine
