#!/bin/bash
# test-mount-crash with 512-byte blocks: guest changes and the stream's
# fills then share pages of the target, and fills of whole absent pages
# go around the page cache (O_DIRECT) while the rest goes through it.
export BLOCK_SIZE=512 ROUNDS=${ROUNDS:-5}
exec bash "$(dirname "$0")/test-mount-crash.sh" "$@"
