# Builds every integration's single executable next to its manifest (manifests/<name>/<name>) for `plakar pkg build`.
#
#   make                 all integrations, for this machine (or for GOOS/GOARCH when set, as `plakar pkg build` does)
#   make s3              one integration; `make fixture` builds test/fixture/fixture
#   make EXT=.exe        what `plakar pkg build` passes when building for Windows (needs GOOS=windows off Windows)
#   make dist package    the npm run build / npm run package pair (dist/<name>/ staging, .ptar files)
#
# `plakar pkg build recipe.yaml` clones the tag, runs `make -C <dir>` and then `plakar pkg create <dir>/manifest.yaml`,
# so <dir> must be manifests/<name> and its Makefile (which calls this one) must leave ./<name> there.
#
# Limitation: for a monorepo recipe (`version: manifests/s3/v0.1.0`, the tag being that whole string) pkg build makes a
# `--filter=blob:none --sparse` clone and `git sparse-checkout set manifests/s3`: only the top-level files and that
# folder are checked out, without shared/, integrations/, scripts/ or proto/ that the build needs. The per-manifest
# Makefile therefore widens the checkout (`git sparse-checkout add shared integrations scripts proto`; git fetches
# those blobs from the same remote) before delegating here. The recipe form that works is thus:
#     name: s3
#     version: manifests/s3/v0.1.0
#     repository: <this repository's git URL>
# A plain `version: v0.1.0` recipe does not: pkg build would look for manifest.yaml at the repository root.
# The build also needs npm (registry access) and tar; it downloads the pinned Node 24 runtime on first use.

INTEGRATIONS := $(sort $(patsubst integrations/%/index.ts,%,$(wildcard integrations/*/index.ts)))
EXT ?=
NPX ?= npx
BUILD = $(NPX) --no-install tsx scripts/build.ts --out-in-place $(if $(EXT),--ext $(EXT))

.PHONY: all fixture dist package clean $(INTEGRATIONS)

all: | node_modules/.package-lock.json
	$(BUILD)

$(INTEGRATIONS) fixture: | node_modules/.package-lock.json
	$(BUILD) --only $@

dist: | node_modules/.package-lock.json
	npm run build

package: dist
	npm run package

clean:
	rm -rf dist $(foreach n,$(INTEGRATIONS),manifests/$(n)/$(n) manifests/$(n)/$(n).exe) test/fixture/fixture test/fixture/fixture.exe

# A fresh clone (as under pkg build) has no node_modules yet.
node_modules/.package-lock.json:
	npm ci --no-audit --no-fund
