# The repository's entry points (each one is a script under scripts/):
#   make test      every test; last line "N passed, N failed"  (run-tests.sh)
#   make patches   export the QEMU series as git format-patch files and
#                  check them (make-patches.sh; PATCHES_DIR=<dir>, default
#                  build/patches)
#   make demo      back up sample disks, verify, restore, compare (demo.sh)
# Not part of the QEMU overlay (scripts/qemu-build.sh leaves it out).

.PHONY: test patches demo

test:
	./scripts/run-tests.sh

patches:
	./scripts/make-patches.sh $(if $(PATCHES_DIR),-o $(PATCHES_DIR))

demo:
	./scripts/demo.sh
