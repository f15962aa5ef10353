// The web chat served at GET / and GET /webchat.js (src/server/webchat/, compiled in by
// cmake/embed_text.cmake).
#pragma once

#include <string_view>

namespace specula::server {

std::string_view WebChatPage();
std::string_view WebChatScript();

// The page runs only the server's script (no inline script: injected markup could not run), talks
// only to this server, and may not be framed by another site (it holds the API key).
inline constexpr std::string_view kWebChatPolicy =
    "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src 'self'; "
    "img-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

}  // namespace specula::server
