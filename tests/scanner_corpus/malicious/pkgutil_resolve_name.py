# expect: dyn.import_system
import pkgutil

pkgutil.resolve_name("os:system")("id")
