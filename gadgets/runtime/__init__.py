"""The generic runtime: it knows nothing of sodium and imports nothing else of the package.

* :mod:`.gadget`: the gadget base class and typed :class:`~.gadget.Property`;
  :mod:`.context`: where a step runs; :mod:`.notice`: messages for the client;
* :mod:`.header`: the ISMRMRD header and :class:`~.header.HeaderError`;
* :mod:`.chain`: chain files (Gadgetron stream configurations); :mod:`.runner`: running one;
  :mod:`.protocol_map`: which chain a protocol runs;
* :mod:`.protocol`: the Gadgetron/MRD wire format; :mod:`.server`: the embedded server;
  :mod:`.client`: sending a file, reconstructing one in-process; :mod:`.outputs`: the folder
  results land in; :mod:`.external`: a gadget as a real Gadgetron's ``<external>`` step;
* :mod:`.pacs`: C-STORE to a PACS;
* :mod:`.application`: what an application tells the runtime (its chains, names, hooks).
"""
