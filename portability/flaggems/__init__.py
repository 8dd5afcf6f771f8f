"""Everything that faces FlagGems: where the installed package came from (`source`), what its API can do
(`features`, probed on the package, never inferred from a version number), what it registers
(`registry`), which of those registrations the catalog exercises (`coverage`) and what each vendor
backend declares (`vendors`). The registry and vendor readers parse the package's files and never
import it: on a host without a FlagGems device, `import flag_gems` fails to initialise."""
