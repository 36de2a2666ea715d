"""InSAR stacks, one module per job:

* :mod:`.pairs`: pair dates from file names or a pairs CSV; :mod:`.network`: the interferogram network
  (dates, design matrices, components, pair selection);
* :mod:`.weights`: observation weights from coherence; :mod:`.units`: radians / m / mm -> LOS mm;
* :mod:`.kernels`: linear-algebra kernels vectorised across pixels; :mod:`.sbas`: the SBAS block solver
  (:func:`~.sbas.sbas_invert_block`, :class:`~.sbas.SolverOptions`) and the memory model of its solve;
  :mod:`.velocity`: the velocity fit; :mod:`.reference`: the reference pixel;
* :mod:`.products`: the one reader of interferograms, coherence and geometry as LiCSAR and HyP3 ship them
  (8-bit coherence, LiCSAR zeros as no data, per-product extents on one grid, baselines, folder discovery);
* :mod:`.stack`: the prepared stack of files (:func:`~.stack.prepare_stack`); :mod:`.memory_plan`:
  windows and sub-blocks under a memory cap; :mod:`.sbas_stack`: the streaming driver
  (:func:`~.sbas_stack.invert_stack`, :class:`~.sbas_stack.SbasOptions`);
* :mod:`.geometry`: LOS to vertical, ascending/descending decomposition; :mod:`.mosaic`: frame mosaics.

Corrections and network QC (loop closure, ramps, troposphere) go here too."""
