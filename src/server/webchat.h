// The web chat page served at GET / (src/server/webchat/index.html, compiled in by
// cmake/embed_text.cmake).
#pragma once

#include <string_view>

namespace specula::server {

std::string_view WebChatPage();

// The page runs only its own inline script and talks only to this server.
inline constexpr std::string_view kWebChatPolicy =
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'";

}  // namespace specula::server
