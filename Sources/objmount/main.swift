import ObjmountCLI

Objmount.runMain()
