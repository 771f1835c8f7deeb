"""Custom components (upstream's `custom_component`): components of kinds that no building block
defines, for the APIs and components that know the kind (upstream's API plugins).

A kind is named in config (`custom_component: {<kind>: {<name>: {type, metadata}}}`, or in a
Dapr manifest `spec.type: custom.<kind>.<type>`), and its types are registered here as
`<kind>.<type>`. The runtime builds them as it builds any component and hands them out by kind
(`Runtime.custom(kind)`). Built in: upstream's sample kind `helloworld` (types `in-memory` and
`goodbye`), which `helloworld.Greeter` serves (docs/extending.md).
"""

FACTORIES: dict[str, str] = {
    "helloworld.in-memory": "layotto.components.custom.helloworld:InMemoryHelloWorld",
    "helloworld.goodbye": "layotto.components.custom.helloworld:SayGoodbyeHelloWorld",
}
