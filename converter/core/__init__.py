"""The shared core: what the converter and the verifier both use (errors, the registries' vocabulary, worker
isolation, images and the one preprocessing, safe model loading, atomic files, CLI start-up). It imports
nothing from the rest of `converter` or from `verify`; `verify` reads the converter's outputs only through
`converter.zoo`, `converter.manifest` and this package."""
