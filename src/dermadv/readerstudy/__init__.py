"""Blinded reader study: do the images that fool the model also fool dermatologists?

Workflow (``dermadv reader-study ...``)::

    build --from RUN... --per-attack 34 --unmodified 102 --out STUDY   # or --images DIR --manifest CSV
    readers add STUDY --name "Dr A" --role dermatologist --years 10    # prints the invite link (once)
    serve STUDY [--db postgresql://...] [--coordinator-token ...]      # readers answer; /coordinator
    export STUDY --out answers.csv                                     # or --format original --reader ID
    analyze answers.csv --out report/ --reference-band 0.7,0.85

Modules: ``study`` (the STUDY directory and its hidden manifest), ``build``, ``store`` (SQLAlchemy:
readers, answers, answer_changes, submissions, presentations), ``app`` (FastAPI; templates/ and
static/ are plain HTML + one vanilla JS file, no build step, no CDN), ``analysis`` (per-reader
metrics, logistic regression, figure), ``mrmc`` (Obuchowski-Rockette and DBM, jackknife or DeLong
covariances; standalone model vs readers).
Web dependencies are imported only by the modules that need them (extra ``dermadv[readerstudy]``).
"""
