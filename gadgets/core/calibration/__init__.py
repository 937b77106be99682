"""Calibration against reference tubes of known concentration.

* :mod:`.calibrate`: the whole sequence as one pure function, :func:`.calibrate.calibrate`;
* :mod:`.tube`: a tube as the calibration sees it;
* :mod:`.tube_detection`: finding tubes outside the head;
* :mod:`.tube_templates`: the image a uniform cylinder makes through the acquisition, and undoing
  its blur in the map;
* :mod:`.tube_fit`: measuring a tube by its template, screening candidates;
* :mod:`.linear_fit`: the line ``S = a C + b`` and pairing tubes with concentrations;
* :mod:`.uncertainty`: the TSC map's standard error (image noise and the fit's);
* :mod:`.errors`: :class:`~.errors.CalibrationError`, the one refusal.
"""
