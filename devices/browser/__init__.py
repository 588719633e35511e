"""The browser device: a page on 127.0.0.1 that is the user's microphone, camera, screen and speaker."""
