# expect: dyn.import_system
import site

site.addsitedir("plugins")  # plugins/ holds a .pth with an import line
