# expect: dyn.import_system
import imp

imp.load_source("helper", "helper.txt")
