"""InSAR stacks: interferogram pairs and network, SBAS solver kernels (:mod:`.sbas`) and the streaming
driver that reads a stack of files and writes the time series (:mod:`.sbas_stack`). Corrections and
network QC (loop closure, ramps, troposphere) and LOS geometry go here too."""
