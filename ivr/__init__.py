"""ivr: the IVR flow language, its validator and interpreter (run by ctid), Mandarin
speech, text-to-speech cache, look-ups, PIN security, statistics and the external IVR
interface. See ivr/README.md.

    flows = ivr.validate.load_checked(["etc/ivr"])           # FlowSet, or FlowError
    session = ivr.interpreter.IvrSession(flows, "bill170", CallInfo(call_id, ani, dnis))
    actions = session.start(now); session.on_digit("1", now); ...
    service = ivr.service.IvrService(flows, PromptResolver(Tts(cache_dir)), ...)
"""
