"""recorder.storage"""
