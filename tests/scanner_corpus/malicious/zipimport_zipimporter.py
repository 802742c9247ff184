# expect: dyn.import_system
import zipimport

zipimport.zipimporter("data/bundle.zip").load_module("payload")
